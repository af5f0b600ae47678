// Tracking on the realtime socket (realtime.ts, ConnectionStage): one FaceTracker per connection
// over the service's one ArrivalLedger. Each face of a `results` message gets its track id and the
// track's identity in place of the frame's own match; each arrival is sent on the socket, ahead of
// the results of the frame that raised it, and queued for the webhook.
import { clampSimilarity } from '../recognition.js';
import type { OpenConnectionStage } from '../realtime.js';
import type { RealtimeFaceBody, RecognizedFaceBody } from '../schemas.js';
import type { WebhookSender } from '../webhooks.js';
import type { ArrivalLedger } from './events.js';
import { FaceTracker, type TrackedFace } from './tracker.js';

export interface TrackingOptions {
  /** The service's visits, shared by every connection. */
  arrivals: ArrivalLedger;
  /** Null without WEBHOOK_URL. */
  webhooks: WebhookSender | null;
}

export function trackingStage({ arrivals, webhooks }: TrackingOptions): OpenConnectionStage {
  const onEvent = webhooks ? webhooks.send.bind(webhooks) : undefined;
  return ({ camera, send }) => {
    // Made with the first frame: the threshold is known once the models have loaded.
    let tracker: FaceTracker | null = null;
    return {
      results(faces, frame) {
        tracker ??= new FaceTracker({ camera, threshold: frame.threshold, arrivals, onEvent });
        const { analysis } = frame;
        const update = tracker.update(
          analysis.faces.map((face, i) => ({ ...face, embedding: analysis.embeddings[i] ?? null })),
          frame.matches,
          // The time the frame arrived, on the wall clock that events report.
          performance.timeOrigin + frame.receivedAt,
        );
        for (const event of update.events) send(event);
        return faces.map((face, i) => onTrack(face, update.faces[i]));
      },
    };
  };
}

/** The face as answered: its track, and who the track is rather than who this frame alone looks like. */
function onTrack(face: RecognizedFaceBody, track: TrackedFace): RealtimeFaceBody {
  return {
    ...face,
    confidence: track.confidence === null ? null : clampSimilarity(track.confidence),
    visitor_id: track.visitorId,
    matched: track.matched,
    track_id: track.trackId,
  };
}
