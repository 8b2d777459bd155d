#!/bin/sh
# prune-torture.sh [BUILD] [KILLS]: engine-lifecycle's crash part, long:
# KILLS (default 200) children running rp rm on a store of 40 RPs are
# killed with SIGKILL at random moments; after each, the store reopened
# writable (the removal finished by the replay) must read every RP left
# bit for bit and hold exactly the map entries the model says (INVARIANTS
# 11). The model part is skipped (BV_LIFE_SEEDS=0). Prints TAP.
set -eu
B=${1:-build}
K=${2:-200}
BV_LIFE_SEEDS=0 BV_LIFE_KILLS=$K exec "$B/test/engine/engine-lifecycle"
