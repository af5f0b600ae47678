// Rewrites the declared shapes of an ONNX model's graph inputs and outputs.
//
// YuNet's file declares a fixed 1x3x640x640 input although its graph is size-agnostic, and
// onnxruntime refuses inputs whose size differs from the declaration. Making those dims symbolic
// lets one session run any padded size. The edit is surgical: every byte of the model except the
// rewritten shapes is copied as it is, so fields newer than any .proto we could bundle survive.
import protobuf from 'protobufjs';

const { Reader, Writer } = protobuf;

// Field numbers from onnx.proto.
const MODEL_GRAPH = 7;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const GRAPH_VALUE_INFO = 13;
const VALUE_INFO_NAME = 1;
const VALUE_INFO_TYPE = 2;
const TYPE_TENSOR = 1;
const TENSOR_SHAPE = 2;
const SHAPE_DIM = 1;
const DIM_VALUE = 1;
const DIM_PARAM = 2;

const WIRE_LENGTH_DELIMITED = 2;

/** A dimension: a fixed size, a symbolic name, or `null` to keep what the file declares. */
export type DimEdit = number | string | null;

/** Per graph input/output name, the new dims (same rank as declared). */
export type ShapeEdits = Record<string, DimEdit[]>;

interface Field {
  number: number;
  raw: Uint8Array; // the whole field, tag included
  payload?: Uint8Array; // for length-delimited fields
}

function readFields(bytes: Uint8Array): Field[] {
  const reader = Reader.create(bytes);
  const fields: Field[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    const wireType = tag & 7;
    let payload: Uint8Array | undefined;
    if (wireType === WIRE_LENGTH_DELIMITED) payload = reader.bytes();
    else reader.skipType(wireType);
    fields.push({ number: tag >>> 3, raw: bytes.subarray(start, reader.pos), payload });
  }
  return fields;
}

function lengthDelimited(fieldNumber: number, payload: Uint8Array): Uint8Array {
  return Writer.create().uint32((fieldNumber << 3) | WIRE_LENGTH_DELIMITED).bytes(payload).finish();
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
}

function dropFields(message: Uint8Array, fieldNumber: number): Uint8Array {
  return concat(readFields(message).filter((f) => f.number !== fieldNumber).map((f) => f.raw));
}

/** Replaces the length-delimited field `fieldNumber` of `message` wherever `edit` returns new bytes. */
function mapFields(message: Uint8Array, fieldNumber: number, edit: (payload: Uint8Array) => Uint8Array | null): Uint8Array {
  return concat(
    readFields(message).map((f) => {
      if (f.number !== fieldNumber || !f.payload) return f.raw;
      const replaced = edit(f.payload);
      return replaced ? lengthDelimited(fieldNumber, replaced) : f.raw;
    }),
  );
}

function encodeDim(dim: number | string): Uint8Array {
  const w = Writer.create();
  if (typeof dim === 'number') w.uint32((DIM_VALUE << 3) | 0).int64(dim);
  else w.uint32((DIM_PARAM << 3) | WIRE_LENGTH_DELIMITED).string(dim);
  return w.finish();
}

function rewriteShape(shape: Uint8Array, dims: DimEdit[], valueName: string): Uint8Array {
  const fields = readFields(shape);
  const declared = fields.filter((f) => f.number === SHAPE_DIM);
  if (declared.length !== dims.length) {
    throw new Error(`ONNX value '${valueName}' has rank ${declared.length}, the edit gives ${dims.length} dims`);
  }
  let i = 0;
  return concat(
    fields.map((f) => {
      if (f.number !== SHAPE_DIM) return f.raw;
      const dim = dims[i++];
      return dim === null ? f.raw : lengthDelimited(SHAPE_DIM, encodeDim(dim));
    }),
  );
}

function valueInfoName(valueInfo: Uint8Array): string {
  const nameField = readFields(valueInfo).find((f) => f.number === VALUE_INFO_NAME);
  return nameField?.payload ? Buffer.from(nameField.payload).toString('utf8') : '';
}

function rewriteValueInfo(valueInfo: Uint8Array, edits: ShapeEdits, seen: Set<string>): Uint8Array | null {
  const name = valueInfoName(valueInfo);
  const dims = edits[name];
  if (!dims) return null;
  seen.add(name);
  return mapFields(valueInfo, VALUE_INFO_TYPE, (type) =>
    mapFields(type, TYPE_TENSOR, (tensor) => mapFields(tensor, TENSOR_SHAPE, (shape) => rewriteShape(shape, dims, name))),
  );
}

/**
 * Returns a copy of `model` whose named graph inputs/outputs declare the given dims.
 * The graph's intermediate `value_info` entries are dropped: they are optional hints, and the
 * exporter's fixed sizes in them would contradict the new dims (onnxruntime would propagate them).
 */
export function editIoShapes(model: Uint8Array, edits: ShapeEdits): Uint8Array {
  const seen = new Set<string>();
  const edited = mapFields(model, MODEL_GRAPH, (graph) => {
    const withInputs = mapFields(dropFields(graph, GRAPH_VALUE_INFO), GRAPH_INPUT, (vi) => rewriteValueInfo(vi, edits, seen));
    return mapFields(withInputs, GRAPH_OUTPUT, (vi) => rewriteValueInfo(vi, edits, seen));
  });
  const missing = Object.keys(edits).filter((name) => !seen.has(name));
  if (missing.length > 0) throw new Error(`ONNX graph has no input/output named ${missing.join(', ')}`);
  return edited;
}

/** The declared dims of each graph input and output: numbers, symbolic names, or null when unset. */
export function readIoShapes(model: Uint8Array): Record<string, (number | string | null)[]> {
  const shapes: Record<string, (number | string | null)[]> = {};
  const graph = readFields(model).find((f) => f.number === MODEL_GRAPH)?.payload;
  if (!graph) return shapes;
  for (const vi of readFields(graph).filter((f) => f.number === GRAPH_INPUT || f.number === GRAPH_OUTPUT)) {
    const fields = readFields(vi.payload!);
    const name = valueInfoName(vi.payload!);
    const type = fields.find((f) => f.number === VALUE_INFO_TYPE)?.payload;
    const tensor = type && readFields(type).find((f) => f.number === TYPE_TENSOR)?.payload;
    const shape = tensor && readFields(tensor).find((f) => f.number === TENSOR_SHAPE)?.payload;
    if (!shape) continue;
    shapes[name] = readFields(shape)
      .filter((f) => f.number === SHAPE_DIM)
      .map((d) => {
        const dimFields = readFields(d.payload!);
        const value = dimFields.find((f) => f.number === DIM_VALUE);
        if (value) return Number(Reader.create(value.raw.subarray(1)).int64());
        const param = dimFields.find((f) => f.number === DIM_PARAM);
        return param?.payload ? Buffer.from(param.payload).toString('utf8') : null;
      });
  }
  return shapes;
}
