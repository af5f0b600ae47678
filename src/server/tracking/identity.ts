// Who a track is, decided over its frames rather than by any one of them. Each embedded frame
// brings its best gallery match; a visitor is named once `votes` of the last `window` embedded
// frames have that visitor as best match at or above the threshold. With votes > window / 2 no
// two visitors can qualify at once, a single frame can neither name a stranger nor move a named
// track to someone else, and a named track keeps its name through the frames (a turned head, a
// blur) where the similarity dips. bench/tracking.ts measures the rule against its alternatives.
import type { Match } from '../../gallery/types.js';

export interface IdentityRule {
  /** Embedded frames considered: the track's most recent ones. */
  window: number;
  /** Of those, how many must name the same visitor at or above the threshold. */
  votes: number;
}

/**
 * Three consecutive agreeing frames (100 ms at 30 fps). Measured by bench/tracking.ts over walk-up
 * streams of photos that are not enrolled and the shared clip: no stranger named (per frame, 0.44%
 * of frames name a stranger), every enrolled walker named, 2 frames after the first at the median.
 * Two agreeing frames named strangers; 3 of 5 named a lookalike whose frames crossed the threshold
 * now and then.
 */
export const IDENTITY_RULE: IdentityRule = { window: 3, votes: 3 };

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

  /** The visitor named by `votes` frames of the window (votes > window / 2 make it unique), with their mean similarity. */
  private elected(): { visitorId: string; confidence: number } | null {
    const tally = new Map<string, { votes: number; sum: number }>();
    for (const match of this.recent) {
      if (!match || match.similarity < this.threshold) continue;
      const entry = tally.get(match.visitorId) ?? { votes: 0, sum: 0 };
      entry.votes++;
      entry.sum += match.similarity;
      tally.set(match.visitorId, entry);
    }
    for (const [visitorId, { votes, sum }] of tally) if (votes >= this.rule.votes) return { visitorId, confidence: sum / votes };
    return null;
  }

  /** Mean similarity of the window's frames that name `visitorId`; null when none does. */
  private meanSimilarityOf(visitorId: string): number | null {
    const own = this.recent.filter((m): m is Match => m !== null && m.visitorId === visitorId && m.similarity >= this.threshold);
    return own.length === 0 ? null : own.reduce((sum, m) => sum + m.similarity, 0) / own.length;
  }
}
