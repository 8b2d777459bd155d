#!/usr/bin/env bash
. "$(dirname "$0")/lib.sh"
echo "1..0 # SKIP not written yet"
