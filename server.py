"""Entry point: ``python server.py [options]`` does what ``dls serve [options]`` does."""

import sys

from dls.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
