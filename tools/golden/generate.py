#!/usr/bin/python3
"""Golden data for the engine's parity tests, produced with OpenCV as the oracle.

Run with Debian's python3-opencv (4.6): `/usr/bin/python3 tools/golden/generate.py`.
Writes test/golden/yunet.json.gz and test/golden/align.json.gz.

OpenCV 4.6 cannot run the 2023mar YuNet decode itself (its FaceDetectorYN expects the 2022 outputs)
nor load MobileFaceNet, so:
- YuNet: cv2.dnn gives the raw outputs for a blob built as FaceDetectorYN builds it; faces are
  decoded from those raw outputs with the formulas of face_detect.cpp (as written in
  ../shared/testdata/MANIFEST.md) and cv2.dnn.NMSBoxes.
- Alignment: cv2.FaceRecognizerSF.alignCrop (the recognizer is created from the YuNet file only
  because 4.6 must load some network; alignCrop does not use it).
- SFace's input blob: cv2.dnn.blobFromImage(aligned, 1, (112, 112), 0, swapRB=True), as
  FaceRecognizerSF::feature does.
Images are cropped, never resized, so both sides feed identical pixels (decoding is bit-identical:
both use libjpeg-turbo/libpng/libwebp; the tests check the pixel digest).
"""
import base64
import gzip
import hashlib
import json
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.environ.get('TESTDATA_DIR', os.path.join(ROOT, '..', 'shared', 'testdata'))
MODELS = os.environ.get('MODELS_DIR', os.path.join(TESTDATA, 'models'))
YUNET = os.path.join(MODELS, 'face_detection_yunet_2023mar.onnx')
OUT = os.path.join(ROOT, 'test', 'golden')

STRIDES = (8, 16, 32)
DIVISOR = 32
OUTPUT_NAMES = [f'{head}_{s}' for head in ('cls', 'obj', 'bbox', 'kps') for s in STRIDES]
WIDTHS = {'cls': 1, 'obj': 1, 'bbox': 4, 'kps': 10}

# (name, image, crop x, y, w, h or None for the whole image, score threshold)
DETECT_CASES = [
    ('obama_640x480', 'faces/obama/1.jpg', (100, 0, 640, 480), 0.9),
    ('frame150_640x360', 'video/frames/frame_150.jpg', None, 0.9),
    ('voc4176_480x438', 'multi/voc_2008_004176.jpg', None, 0.6),
    ('bald_640x640', 'multi/bald_guys.jpg', (300, 300, 640, 640), 0.9),
    ('selfie_600x604', 'multi/selfie_many_people.jpg', None, 0.5),
    ('coffee_noface', 'noface/coffee.jpg', None, 0.9),
]
NMS_THRESHOLD = 0.3
TOP_K = 5000

ALIGN_IMAGES = [
    'faces/obama/1.jpg',
    'faces/deepface_p01/4.jpg',
    'faces/tom_cruise/1.jpg',
    'multi/two_people.jpg',
    'hard/obama2_rgba.png',
    'hard/cameraman_gray.jpg',
    'video/frames/frame_240.jpg',
]
ALIGN_DETECT_SIZE = 640
ALIGN_SCORE = 0.6


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode('ascii')


def digest(image):
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def load(path):
    image = cv2.imread(os.path.join(TESTDATA, path), cv2.IMREAD_COLOR)
    if image is None:
        sys.exit(f'cannot read {path}')
    return image


def yunet_raw(net, image):
    h, w = image.shape[:2]
    pad_h = (h - 1) // DIVISOR * DIVISOR + DIVISOR
    pad_w = (w - 1) // DIVISOR * DIVISOR + DIVISOR
    padded = cv2.copyMakeBorder(image, 0, pad_h - h, 0, pad_w - w, cv2.BORDER_CONSTANT, value=0)
    net.setInput(cv2.dnn.blobFromImage(padded))
    outputs = net.forward(OUTPUT_NAMES)
    return pad_w, pad_h, {name: out.reshape(-1, WIDTHS[name.split('_')[0]]).astype(np.float32) for name, out in zip(OUTPUT_NAMES, outputs)}


def decode(outputs, pad_w, pad_h, score_threshold):
    """face_detect.cpp postProcess, in float32, then NMSBoxes on int-truncated boxes."""
    faces = []
    for s in STRIDES:
        cols, rows = pad_w // s, pad_h // s
        cls = np.clip(outputs[f'cls_{s}'][:, 0], 0, 1)
        obj = np.clip(outputs[f'obj_{s}'][:, 0], 0, 1)
        score = np.sqrt(cls * obj).astype(np.float32)
        bbox, kps = outputs[f'bbox_{s}'], outputs[f'kps_{s}']
        for idx in np.nonzero(score >= np.float32(score_threshold))[0]:
            r, c = divmod(int(idx), cols)
            f = np.float32
            cx = (f(c) + bbox[idx, 0]) * f(s)
            cy = (f(r) + bbox[idx, 1]) * f(s)
            w = np.exp(bbox[idx, 2]).astype(np.float32) * f(s)
            h = np.exp(bbox[idx, 3]).astype(np.float32) * f(s)
            row = [cx - w / f(2), cy - h / f(2), w, h]
            for n in range(5):
                row += [(kps[idx, 2 * n] + f(c)) * f(s), (kps[idx, 2 * n + 1] + f(r)) * f(s)]
            row.append(score[idx])
            faces.append(np.array(row, dtype=np.float32))
    if len(faces) > 1:
        boxes = [[int(f[0]), int(f[1]), int(f[2]), int(f[3])] for f in faces]
        keep = cv2.dnn.NMSBoxes(boxes, [float(f[14]) for f in faces], score_threshold, NMS_THRESHOLD, top_k=TOP_K)
        faces = [faces[int(i)] for i in np.array(keep).reshape(-1)]
    return faces


def raw_subset(outputs, pad_w, pad_h):
    """All anchors scoring >= 0.05 plus every 16th anchor: small enough to commit, wide enough to test."""
    subset = {}
    for s in STRIDES:
        score = np.sqrt(np.clip(outputs[f'cls_{s}'][:, 0], 0, 1) * np.clip(outputs[f'obj_{s}'][:, 0], 0, 1))
        anchors = np.union1d(np.nonzero(score >= 0.05)[0], np.arange(0, score.shape[0], 16)).astype(np.int32)
        subset[str(s)] = {
            'anchors': b64(anchors),
            **{head: b64(outputs[f'{head}_{s}'][anchors]) for head in WIDTHS},
        }
    return subset


def face_json(f):
    return {'box': [float(v) for v in f[0:4]], 'landmarks': [[float(f[4 + 2 * n]), float(f[5 + 2 * n])] for n in range(5)], 'score': float(f[14])}


def detect_cases(net):
    cases = []
    for name, path, crop, score_threshold in DETECT_CASES:
        image = load(path)
        if crop:
            x, y, w, h = crop
            image = image[y:y + h, x:x + w]
        pad_w, pad_h, outputs = yunet_raw(net, image)
        faces = decode(outputs, pad_w, pad_h, score_threshold)
        cases.append({
            'name': name, 'image': path, 'crop': list(crop) if crop else None,
            'width': image.shape[1], 'height': image.shape[0], 'pixelsSha256': digest(image[:, :, ::-1]),
            'padWidth': pad_w, 'padHeight': pad_h,
            'scoreThreshold': score_threshold, 'nmsThreshold': NMS_THRESHOLD, 'topK': TOP_K,
            'raw': raw_subset(outputs, pad_w, pad_h),
            'faces': [face_json(f) for f in faces],
        })
        print(f'{name}: {image.shape[1]}x{image.shape[0]} -> {len(faces)} faces', file=sys.stderr)
    return cases


def align_cases(net, recognizer):
    cases = []
    for path in ALIGN_IMAGES:
        image = load(path)
        h, w = image.shape[:2]
        scale = ALIGN_DETECT_SIZE / max(w, h)
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))))
        pad_w, pad_h, outputs = yunet_raw(net, small)
        faces = decode(outputs, pad_w, pad_h, ALIGN_SCORE)
        sx, sy = w / small.shape[1], h / small.shape[0]
        for i, f in enumerate(faces[:3]):
            row = f.copy()
            row[0:14:2] *= np.float32(sx)
            row[1:14:2] *= np.float32(sy)
            cases.append(align_case(recognizer, f'{path}#{i}', path, image, row, with_float_blob=len(cases) < 2))
    # A face pushed against the top-left corner: the warp reads outside the image (black border).
    image = load('faces/obama/4.jpg')
    row = np.zeros(15, dtype=np.float32)
    row[4:14] = [8, 20, 50, 18, 30, 45, 12, 70, 46, 68]
    cases.append(align_case(recognizer, 'faces/obama/4.jpg#corner', 'faces/obama/4.jpg', image, row, with_float_blob=False))
    return cases


def align_case(recognizer, name, path, image, row, with_float_blob):
    aligned = recognizer.alignCrop(image, row.reshape(1, 15))
    blob = cv2.dnn.blobFromImage(aligned, 1, (112, 112), (0, 0, 0), swapRB=True, crop=False)
    rgb = aligned[:, :, ::-1]
    case = {
        'name': name, 'image': path, 'pixelsSha256': digest(image[:, :, ::-1]),
        'landmarks': [[float(row[4 + 2 * n]), float(row[5 + 2 * n])] for n in range(5)],
        'alignedRgb': b64(rgb),
        'sfaceBlobSha256': digest(blob.astype(np.float32)),
    }
    if with_float_blob:
        # MobileFaceNet's convention (torchvision ToTensor + Normalize), from the same crop.
        mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
        std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
        case['mobilefacenetBlob'] = b64(((rgb.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1).astype(np.float32))
    print(f'{name}: aligned', file=sys.stderr)
    return case


def write(name, data):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with gzip.GzipFile(path, 'wb', mtime=0) as f:
        f.write(json.dumps(data, indent=1).encode('utf-8'))
    print(f'wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)', file=sys.stderr)


def main():
    net = cv2.dnn.readNet(YUNET)
    recognizer = cv2.FaceRecognizerSF.create(YUNET, '')
    meta = {'opencv': cv2.__version__, 'numpy': np.__version__, 'generator': 'tools/golden/generate.py'}
    write('yunet.json.gz', {**meta, 'cases': detect_cases(net)})
    write('align.json.gz', {**meta, 'cases': align_cases(net, recognizer)})


if __name__ == '__main__':
    main()
