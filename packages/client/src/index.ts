// @face-recog/client: a typed client for the face-recog service, for Node 20 and browsers.
export { createClient } from './client.js';
export type { CallOptions, ClientOptions, FaceRecogClient, RecognizeOptions, VerifyOptions } from './client.js';
export { RealtimeClient } from './realtime.js';
export type {
  FrameImage,
  RealtimeCloseEvent,
  RealtimeDroppedEvent,
  RealtimeErrorEvent,
  RealtimeEvents,
  RealtimeOptions,
  RealtimeResultsEvent,
  ReconnectOptions,
  WebSocketConstructor,
  WebSocketLike,
} from './realtime.js';
export { FaceRecogApiError, FaceRecogClientError, FaceRecogNetworkError, FaceRecogTimeoutError } from './errors.js';
export type { ClientErrorCode } from './errors.js';
export type * from './types.js';
