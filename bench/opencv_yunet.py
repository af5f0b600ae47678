#!/usr/bin/python3
"""OpenCV DNN's YuNet forward time on a given blob (float32 NCHW raw file), for bench/engine.ts.

Usage: /usr/bin/python3 bench/opencv_yunet.py MODEL BLOB HEIGHT WIDTH
Then, for each line N read from stdin, runs N forwards and prints one JSON line
{"times_ms": [...], "opencv": version, "threads": n}, so that the caller can alternate blocks of
OpenCV and onnxruntime runs and both see the same machine. Uses OpenCV's default threading (all
cores), as an OpenCV user would.
"""
import json
import sys
import time

import cv2
import numpy as np

WARMUP = 5

model, blob_path, height, width = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
blob = np.fromfile(blob_path, dtype=np.float32).reshape(1, 3, height, width)
net = cv2.dnn.readNet(model)
names = [f'{h}_{s}' for h in ('cls', 'obj', 'bbox', 'kps') for s in (8, 16, 32)]


def forward():
    net.setInput(blob)
    net.forward(names)


for _ in range(WARMUP):
    forward()
for line in sys.stdin:
    times = []
    for _ in range(int(line)):
        start = time.perf_counter()
        forward()
        times.append((time.perf_counter() - start) * 1000)
    print(json.dumps({'times_ms': times, 'opencv': cv2.__version__, 'threads': cv2.getNumThreads()}), flush=True)
