"""Python's len(text) and len(text.split(" ")) for each string of a JSON list.

Usage: pylen.py FILE.json   (FILE.json holds a list of strings). Prints [[chars, words], ...].
"""
import json
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    texts = json.load(f)
json.dump([[len(t), len(t.split(" "))] for t in texts], sys.stdout)
