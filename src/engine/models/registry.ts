// What models exist: one manifest per model, with everything needed to fetch, verify and feed it.
// Sources and checksums: ../shared/spec/CONTRACT.md and ../shared/testdata/MANIFEST.md.
import type { ShapeEdits } from './onnx-shapes.js';

export interface PixelConvention {
  /** Channel order the network expects. */
  channelOrder: 'bgr' | 'rgb';
  /** value = (pixel * scale - mean[c]) / std[c], per channel in `channelOrder`. */
  scale: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

interface ModelBase {
  name: string;
  file: string;
  bytes: number;
  sha256: string;
  url: string;
  license: string;
  /** The pixel convention the network was trained with (its single graph input). */
  input: PixelConvention;
  /** Declared-shape edits applied before loading (see onnx-shapes.ts). */
  shapeEdits?: ShapeEdits;
}

export interface DetectorManifest extends ModelBase {
  kind: 'detector';
  /** Inputs are padded right/bottom with zeros to a multiple of this. */
  divisor: number;
  strides: readonly number[];
  defaults: { scoreThreshold: number; nmsThreshold: number; topK: number };
}

export interface RecognizerManifest extends ModelBase {
  kind: 'recognizer';
  input: { width: number; height: number } & PixelConvention;
  dimension: number;
  /** Faces per run; 1 where the exported graph pins its batch. */
  maxBatch: number;
  /** Cosine similarity at or above which two faces are the same person. */
  defaultThreshold: number;
}

export type ModelManifest = DetectorManifest | RecognizerManifest;

const NO_NORMALISATION = { scale: 1, mean: [0, 0, 0], std: [1, 1, 1] } as const;
const IMAGENET_RGB = { scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } as const;

const YUNET_STRIDES = [8, 16, 32] as const;
const YUNET_HEADS = ['cls', 'obj', 'bbox', 'kps'] as const;

/** YuNet's graph is size-agnostic but declares 1x3x640x640; anchors per stride follow the input. */
function yunetShapeEdits(): ShapeEdits {
  const edits: ShapeEdits = { input: [1, 3, 'height', 'width'] };
  for (const stride of YUNET_STRIDES) {
    for (const head of YUNET_HEADS) edits[`${head}_${stride}`] = [1, `anchors_${stride}`, null];
  }
  return edits;
}

const ZOO_YUNET = 'https://huggingface.co/opencv/face_detection_yunet/resolve/main';
const ZOO_SFACE = 'https://huggingface.co/opencv/face_recognition_sface/resolve/main';
const MOBILEFACENET = 'https://raw.githubusercontent.com/foamliu/MobileFaceNet/a6cc9032a659b615f477833e1a70b5e7931bcccc/weights';

function yunet(name: string, file: string, bytes: number, sha256: string): DetectorManifest {
  return {
    kind: 'detector',
    name,
    file,
    bytes,
    sha256,
    url: `${ZOO_YUNET}/${file}`,
    license: 'MIT (OpenCV Zoo)',
    // OpenCV FaceDetectorYN feeds dnn::blobFromImage(img): BGR, raw 0..255.
    input: { channelOrder: 'bgr', ...NO_NORMALISATION },
    shapeEdits: yunetShapeEdits(),
    divisor: 32,
    strides: YUNET_STRIDES,
    defaults: { scoreThreshold: 0.9, nmsThreshold: 0.3, topK: 5000 },
  };
}

function sface(name: string, file: string, bytes: number, sha256: string): RecognizerManifest {
  return {
    kind: 'recognizer',
    name,
    file,
    bytes,
    sha256,
    url: `${ZOO_SFACE}/${file}`,
    license: 'Apache-2.0 (OpenCV Zoo)',
    // FaceRecognizerSF::feature: blobFromImage(aligned, 1.0, 112x112, 0, swapRB=true): RGB, raw 0..255.
    input: { width: 112, height: 112, channelOrder: 'rgb', ...NO_NORMALISATION },
    dimension: 128,
    maxBatch: 1,
    defaultThreshold: 0.363,
  };
}

export const MODELS: Readonly<Record<string, ModelManifest>> = {
  'yunet-2023mar': yunet(
    'yunet-2023mar',
    'face_detection_yunet_2023mar.onnx',
    232589,
    '8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4',
  ),
  'yunet-2023mar-int8': yunet(
    'yunet-2023mar-int8',
    'face_detection_yunet_2023mar_int8.onnx',
    100416,
    '321aa5a6afabf7ecc46a3d06bfab2b579dc96eb5c3be7edd365fa04502ad9294',
  ),
  'sface-2021dec': sface(
    'sface-2021dec',
    'face_recognition_sface_2021dec.onnx',
    38696353,
    '0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79',
  ),
  'sface-2021dec-int8': sface(
    'sface-2021dec-int8',
    'face_recognition_sface_2021dec_int8.onnx',
    9896933,
    '2b0e941e6f16cc048c20aee0c8e31f569118f65d702914540f7bfdc14048d78a',
  ),
  mobilefacenet: {
    kind: 'recognizer',
    name: 'mobilefacenet',
    file: 'MobileFaceNet.onnx',
    bytes: 3998070,
    sha256: 'b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507',
    url: `${MOBILEFACENET}/MobileFaceNet.onnx`,
    license: 'Apache-2.0 (foamliu/MobileFaceNet)',
    // foamliu/MobileFaceNet data_gen.py: RGB, ToTensor (/255), ImageNet mean/std.
    input: { width: 112, height: 112, channelOrder: 'rgb', ...IMAGENET_RGB },
    // The export pins batch 1 in its declared shapes only; faces in one run stay independent
    // (checked by test/engine/embed.test.ts), the output comes back as [1, n*128].
    shapeEdits: { input0: ['batch', 3, 112, 112], output0: [1, 'features'] },
    dimension: 128,
    maxBatch: 8,
    // Measured on ../shared/testdata/faces: same-person cosine min 0.472, different-person max 0.430.
    defaultThreshold: 0.45,
  },
};

export function getModel(name: string): ModelManifest {
  const model = MODELS[name];
  if (!model) throw new Error(`unknown model '${name}'; known: ${Object.keys(MODELS).join(', ')}`);
  return model;
}

export function getDetector(name: string): DetectorManifest {
  const model = getModel(name);
  if (model.kind !== 'detector') throw new Error(`model '${name}' is a ${model.kind}, not a detector`);
  return model;
}

export function getRecognizer(name: string): RecognizerManifest {
  const model = getModel(name);
  if (model.kind !== 'recognizer') throw new Error(`model '${name}' is a ${model.kind}, not a recognizer`);
  return model;
}
