// Visitor events: one "arrived" per visit. A visit lasts while the visitor stays in view of a
// camera and ends once they have been out of its view for the cooldown. The ledger is one per
// service, shared by every connection: a camera that reconnects (a network blip, a reloaded page)
// or two connections feeding the same camera name must not announce the people already in front
// of it again. Cameras are told apart by the `?camera=` name; a connection without one is its own
// camera (nothing says two unnamed connections look at the same place).
import type { Static } from 'typebox';
import type { RealtimeEvent } from '../schemas.js';

/** The message of the contract's "Tracks and visitor events", sent on the socket and POSTed to the webhook (schemas.ts). */
export type ArrivalEvent = Static<typeof RealtimeEvent>;

export type VisitorEvent = ArrivalEvent;

export function arrivalEvent(visitorId: string, trackId: string, camera: string | null, confidence: number, at: number): ArrivalEvent {
  return { type: 'event', event: 'arrived', visitor_id: visitorId, track_id: trackId, camera, confidence, at: new Date(at).toISOString(), faces: [], count: 0 };
}

export const DEFAULT_EVENT_COOLDOWN_S = 60;

/** When each visitor was last seen on each camera, for as long as it can still matter (the cooldown). */
export class ArrivalLedger {
  private readonly cooldownMs: number;
  private readonly lastSeen = new Map<string, number>();
  private lastSweepAt = -Infinity;

  constructor(cooldownS: number = DEFAULT_EVENT_COOLDOWN_S) {
    this.cooldownMs = cooldownS * 1000;
  }

  /** A track named `visitorId` is in view of `camera` at `at` (ms). */
  seen(camera: string, visitorId: string, at: number): void {
    const key = ledgerKey(camera, visitorId);
    this.lastSeen.set(key, Math.max(at, this.lastSeen.get(key) ?? -Infinity));
  }

  /**
   * A track has just been named `visitorId` on `camera` at `at`: true when this starts a visit
   * (the visitor was not seen there within the cooldown), false when it continues one (the same
   * person tracked anew after a lost detection, or seen by another connection of the camera).
   * Either way the sighting is recorded.
   */
  arrive(camera: string, visitorId: string, at: number): boolean {
    this.sweep(at);
    const last = this.lastSeen.get(ledgerKey(camera, visitorId));
    this.seen(camera, visitorId, at);
    return last === undefined || at - last >= this.cooldownMs;
  }

  /** Sightings older than the cooldown decide nothing any more; dropping them bounds the ledger to recent visitors. */
  private sweep(now: number): void {
    if (now - this.lastSweepAt < this.cooldownMs) return;
    this.lastSweepAt = now;
    for (const [key, at] of this.lastSeen) if (now - at >= this.cooldownMs) this.lastSeen.delete(key);
  }

  /** Visitor-camera pairs remembered now (for tests of the bound). */
  get size(): number {
    return this.lastSeen.size;
  }
}

function ledgerKey(camera: string, visitorId: string): string {
  // JSON keeps any camera name and visitor id apart (no separator character can collide).
  return JSON.stringify([camera, visitorId]);
}
