// A small ONNX model, written in code, that ranks a block of 8-bit codes against queries:
// dots = codes x queries (MatMulInteger), scaled back per row, then the k best rows per query
// (TopK). onnxruntime runs it on its own threads with SIMD kernels, several times faster than a
// JavaScript loop, and reading a quarter of the bytes that float32 rows would take.
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
const UINT8 = 2;
const INT8 = 3;
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
 * Inputs: `codes` uint8 [n, dim] (a row's components times its scale, plus `zero`), `zero` uint8
 * scalar, `queries` int8 [dim, m] (one query per column), `scales` float [n, 1] (each row's
 * component per code unit), `k` int64 [1] (k <= n).
 * Output: `indices` int64 [k, m]: per query column, the rows of `codes` with the largest
 * approximate dot products, best first.
 */
export function quantizedTopKModel(dimension: number): Uint8Array {
  const w = protobuf.Writer.create();
  int(w, MODEL.irVersion, IR_VERSION);
  string(w, MODEL.producerName, 'face-recog');
  message(w, MODEL.opsetImport, (o) => {
    string(o, OPSET.domain, '');
    int(o, OPSET.version, OPSET_VERSION);
  });
  message(w, MODEL.graph, (g) => {
    node(g, 'MatMulInteger', ['codes', 'queries', 'zero'], ['dots'], {});
    node(g, 'Cast', ['dots'], ['dots_float'], { to: FLOAT });
    node(g, 'Mul', ['dots_float', 'scales'], ['scores'], {});
    node(g, 'TopK', ['scores', 'k'], ['values', 'indices'], { axis: 0, largest: 1, sorted: 1 });
    string(g, GRAPH.name, 'quantized_top_k');
    tensorValue(g, GRAPH.input, 'codes', UINT8, ['n', dimension]);
    tensorValue(g, GRAPH.input, 'queries', INT8, [dimension, 'm']);
    tensorValue(g, GRAPH.input, 'zero', UINT8, []);
    tensorValue(g, GRAPH.input, 'scales', FLOAT, ['n', 1]);
    tensorValue(g, GRAPH.input, 'k', INT64, [1]);
    tensorValue(g, GRAPH.output, 'indices', INT64, ['k_out', 'm']);
  });
  return w.finish();
}
