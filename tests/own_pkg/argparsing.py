"""A user's training script imported as a module: it parses the command line at import."""

import argparse

parser = argparse.ArgumentParser(prog="train.py")
parser.add_argument("--data", required=True)
args = parser.parse_args()
