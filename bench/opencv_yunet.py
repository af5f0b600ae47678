#!/usr/bin/python3
"""OpenCV DNN's YuNet forward time on a given blob (float32 NCHW raw file), for bench/engine.ts.

Usage: /usr/bin/python3 bench/opencv_yunet.py MODEL BLOB HEIGHT WIDTH RUNS -> prints JSON {median_ms, runs, opencv}.
Uses OpenCV's default threading (all cores), as an OpenCV user would.
"""
import json
import sys
import time

import cv2
import numpy as np

model, blob_path, height, width, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
blob = np.fromfile(blob_path, dtype=np.float32).reshape(1, 3, height, width)
net = cv2.dnn.readNet(model)
names = [f'{h}_{s}' for h in ('cls', 'obj', 'bbox', 'kps') for s in (8, 16, 32)]
for _ in range(5):
    net.setInput(blob)
    net.forward(names)
times = []
for _ in range(runs):
    start = time.perf_counter()
    net.setInput(blob)
    net.forward(names)
    times.append((time.perf_counter() - start) * 1000)
print(json.dumps({'median_ms': float(np.median(times)), 'runs': runs, 'opencv': cv2.__version__, 'threads': cv2.getNumThreads()}))
