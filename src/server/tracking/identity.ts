// Who a track is, decided over its frames rather than by any one of them. Each embedded frame
// brings its best gallery match; a visitor is named once `votes` of the last `window` embedded
// frames have that visitor as best match at or above the threshold AND those frames' mean
// similarity is at least the threshold plus `margin`. The votes stop stray frames (a blur, a
// half-turned stranger): with votes > window / 2 no two visitors can qualify at once, and a single
// frame can neither name a stranger nor move a named track to someone else. The margin stops
// lookalikes, whose frames hover at the threshold: the mean of several frames is steadier than
// one, so it can be held higher. A named track keeps its name through the frames where the
// similarity dips (a turned head). bench/tracking.ts measures the rule against its alternatives.
import type { Match } from '../../gallery/types.js';

export interface IdentityRule {
  /** Embedded frames considered: the track's most recent ones. */
  window: number;
  /** Of those, how many must name the same visitor at or above the threshold. */
  votes: number;
  /** How far above the threshold the mean similarity of those frames must be. */
  margin: number;
}

/**
 * 3 of the last 5 embedded frames, mean >= threshold + 0.1 (MobileFaceNet: 0.55). Measured by
 * bench/tracking.ts (144 streams of people not enrolled, 13,148 face-frames; 75 streams of enrolled
 * people; the shared clip): each frame alone names a stranger in 0.29% of face-frames, in 4 of the
 * streams. Votes alone still name 1 or 2 of them (a pair of lookalike actors whose frames sit at
 * 0.45-0.50) and, as a name sticks to its track, in more face-frames (3 of 5: 0.67%). This rule
 * names none, and names every enrolled walker 2 frames after their first detection at the median
 * (4 at p90, 11 at most) and the clip's singer 11 frames (367 ms) after he walks on, against 5 for
 * each frame alone. A margin of 0.05 also named none there, but the lookalikes reach a 3-frame
 * mean of 0.497 over twice as many streams; 0.15 more than doubles the p90 delay.
 */
export const IDENTITY_RULE: IdentityRule = { window: 5, votes: 3, margin: 0.1 };

export class TrackIdentity {
  private readonly threshold: number;
  private readonly rule: IdentityRule;
  private readonly recent: (Match | null)[] = [];
  private named: string | null = null;
  private namedConfidence: number | null = null;

  constructor(threshold: number, rule: IdentityRule = IDENTITY_RULE) {
    if (!(rule.votes > rule.window / 2 && rule.votes <= rule.window)) {
      throw new RangeError(`identity rule needs window / 2 < votes <= window (got ${rule.votes} of ${rule.window})`);
    }
    this.threshold = threshold;
    this.rule = rule;
  }

  /** The named visitor, or null while the evidence does not say. */
  get visitorId(): string | null {
    return this.named;
  }

  /**
   * How sure the track is of its visitor: the mean similarity of the recent frames that named it
   * (the last such mean while none of the recent frames does); null while unnamed.
   */
  get confidence(): number | null {
    return this.namedConfidence;
  }

  /**
   * Adds one embedded frame's best match (null: the gallery is empty). Returns the visitor and
   * the confidence when this frame names the track for the first time or moves it to another
   * visitor, else null.
   */
  add(match: Match | null): { visitorId: string; confidence: number } | null {
    this.recent.push(match);
    if (this.recent.length > this.rule.window) this.recent.shift();
    const elected = this.elected();
    if (elected && elected.visitorId !== this.named) {
      this.named = elected.visitorId;
      this.namedConfidence = elected.confidence;
      return elected;
    }
    if (this.named) this.namedConfidence = this.meanSimilarityOf(this.named) ?? this.namedConfidence;
    return null;
  }

  /** The visitor the window's frames name by the rule (votes > window / 2 make it unique), with their mean similarity. */
  private elected(): { visitorId: string; confidence: number } | null {
    const tally = new Map<string, { votes: number; sum: number }>();
    for (const match of this.recent) {
      if (!match || match.similarity < this.threshold) continue;
      const entry = tally.get(match.visitorId) ?? { votes: 0, sum: 0 };
      entry.votes++;
      entry.sum += match.similarity;
      tally.set(match.visitorId, entry);
    }
    for (const [visitorId, { votes, sum }] of tally) {
      if (votes >= this.rule.votes && sum / votes >= this.threshold + this.rule.margin) return { visitorId, confidence: sum / votes };
    }
    return null;
  }

  /** Mean similarity of the window's frames that name `visitorId`; null when none does. */
  private meanSimilarityOf(visitorId: string): number | null {
    const own = this.recent.filter((m): m is Match => m !== null && m.visitorId === visitorId && m.similarity >= this.threshold);
    return own.length === 0 ? null : own.reduce((sum, m) => sum + m.similarity, 0) / own.length;
  }
}
