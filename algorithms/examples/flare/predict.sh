#!/bin/sh
# FLARE's command is `sh predict.sh` in the image's working directory; teams keep scratch files there
python3 predict.py /workspace/inputs /workspace/outputs
