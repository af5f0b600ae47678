// The messages between the worker pool and its inference workers, and errors as they cross.
import { FaceRecogError, type ErrorCode } from '../errors.js';
import type { AnalyzeOptions, EnrolmentAnalysis, ImageAnalysis } from './analysis.js';
import type { ImageLimits } from './image.js';

/** `wide`: the image runs alone in the pool, on intraOpThreads threads; otherwise on one. */
export type WorkerRequest = { id: number; wide: boolean } & (
  | { kind: 'analyze'; bytes: Uint8Array; options: AnalyzeOptions }
  | { kind: 'enrol'; bytes: Uint8Array; limits: ImageLimits }
);

export type WorkerReply =
  | { id: number; analysis: ImageAnalysis }
  | { id: number; enrolment: EnrolmentAnalysis }
  | { id: number; error: WireError };

/** Sent once: the models are loaded, or why they could not be. */
export type WorkerStatus = { ready: true } | { failed: WireError };

/** An error as it crosses a thread: a FaceRecogError keeps its code and Retry-After hint. */
export interface WireError {
  message: string;
  code?: ErrorCode;
  retryAfterS?: number;
}

export function toWire(error: unknown): WireError {
  if (error instanceof FaceRecogError) return { message: error.message, code: error.code, retryAfterS: error.retryAfterS };
  return { message: error instanceof Error ? error.message : String(error) };
}

export function fromWire(wire: WireError): Error {
  return wire.code ? new FaceRecogError(wire.code, wire.message, { retryAfterS: wire.retryAfterS }) : new Error(wire.message);
}
