#!/usr/bin/env bash
# Placeholder until this tier lands: records nothing, so it neither passes nor fails.
set -euo pipefail
echo "tier browser: not built yet"
