#!/bin/sh
# The drift benchmark in one command; see run.py --help.
exec "${PYTHON:-python3}" "$(dirname "$0")/run.py" "$@"
