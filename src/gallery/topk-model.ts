// A two-node ONNX model, written in code: scores = queries x block^T (Gemm, transB), then the
// k best per query (TopK). onnxruntime runs it on its own threads with SIMD kernels, several
// times faster than a JavaScript loop over the same floats.
import protobuf from 'protobufjs';

type Writer = protobuf.Writer;

// Field numbers and enums from onnx.proto.
const MODEL = { irVersion: 1, producerName: 2, graph: 7, opsetImport: 8 };
const OPSET = { domain: 1, version: 2 };
const GRAPH = { node: 1, name: 2, input: 11, output: 12 };
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5 };
const ATTRIBUTE = { name: 1, i: 3, type: 20 };
const ATTRIBUTE_INT = 2;
const VALUE_INFO = { name: 1, type: 2 };
const TYPE_TENSOR = 1;
const TENSOR_TYPE = { elemType: 1, shape: 2 };
const SHAPE_DIM = 1;
const DIM = { value: 1, param: 2 };
const FLOAT = 1;
const INT64 = 7;

const IR_VERSION = 8;
const OPSET_VERSION = 17;

const VARINT = 0;
const LENGTH_DELIMITED = 2;

function message(w: Writer, field: number, body: (w: Writer) => void): void {
  w.uint32((field << 3) | LENGTH_DELIMITED).fork();
  body(w);
  w.ldelim();
}

function string(w: Writer, field: number, value: string): void {
  w.uint32((field << 3) | LENGTH_DELIMITED).string(value);
}

function int(w: Writer, field: number, value: number): void {
  w.uint32((field << 3) | VARINT).int64(value);
}

function tensorValue(w: Writer, field: number, name: string, elemType: number, dims: (number | string)[]): void {
  message(w, field, (vi) => {
    string(vi, VALUE_INFO.name, name);
    message(vi, VALUE_INFO.type, (type) =>
      message(type, TYPE_TENSOR, (tensor) => {
        int(tensor, TENSOR_TYPE.elemType, elemType);
        message(tensor, TENSOR_TYPE.shape, (shape) => {
          for (const d of dims) message(shape, SHAPE_DIM, (dim) => (typeof d === 'number' ? int(dim, DIM.value, d) : string(dim, DIM.param, d)));
        });
      }),
    );
  });
}

function node(w: Writer, opType: string, inputs: string[], outputs: string[], attributes: Record<string, number>): void {
  message(w, GRAPH.node, (n) => {
    for (const i of inputs) string(n, NODE.input, i);
    for (const o of outputs) string(n, NODE.output, o);
    string(n, NODE.name, opType.toLowerCase());
    string(n, NODE.opType, opType);
    for (const [name, value] of Object.entries(attributes)) {
      message(n, NODE.attribute, (a) => {
        string(a, ATTRIBUTE.name, name);
        int(a, ATTRIBUTE.i, value);
        int(a, ATTRIBUTE.type, ATTRIBUTE_INT);
      });
    }
  });
}

/**
 * Inputs: `queries` float [m, dim], `block` float [n, dim], `k` int64 [1] (k <= n).
 * Outputs: `values` float [m, k] (dot products, best first) and `indices` int64 [m, k] (rows of `block`).
 */
export function topKModel(dimension: number): Uint8Array {
  const w = protobuf.Writer.create();
  int(w, MODEL.irVersion, IR_VERSION);
  string(w, MODEL.producerName, 'face-recog');
  message(w, MODEL.opsetImport, (o) => {
    string(o, OPSET.domain, '');
    int(o, OPSET.version, OPSET_VERSION);
  });
  message(w, MODEL.graph, (g) => {
    node(g, 'Gemm', ['queries', 'block'], ['scores'], { transB: 1 });
    node(g, 'TopK', ['scores', 'k'], ['values', 'indices'], { axis: -1, largest: 1, sorted: 1 });
    string(g, GRAPH.name, 'cosine_top_k');
    tensorValue(g, GRAPH.input, 'queries', FLOAT, ['m', dimension]);
    tensorValue(g, GRAPH.input, 'block', FLOAT, ['n', dimension]);
    tensorValue(g, GRAPH.input, 'k', INT64, [1]);
    tensorValue(g, GRAPH.output, 'values', FLOAT, ['m', 'k_out']);
    tensorValue(g, GRAPH.output, 'indices', INT64, ['m', 'k_out']);
  });
  return w.finish();
}
