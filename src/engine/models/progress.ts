// Download progress for people: a bar on a terminal, a line per 10% elsewhere (logs, CI).
import cliProgress from 'cli-progress';
import type { DownloadProgress } from './store.js';

const MB = 1024 * 1024;

export function downloadProgressReporter(stream: NodeJS.WriteStream = process.stderr): (p: DownloadProgress) => void {
  const bars = new Map<string, cliProgress.SingleBar>();
  const lastDecile = new Map<string, number>();
  return (p) => {
    if (stream.isTTY) {
      let bar = bars.get(p.model);
      if (!bar) {
        bar = new cliProgress.SingleBar(
          { stream, format: `${p.model} [{bar}] {percentage}% | {value}/{total} MB`, hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
        bar.start(Number((p.totalBytes / MB).toFixed(1)), 0);
        bars.set(p.model, bar);
      }
      bar.update(Number((p.receivedBytes / MB).toFixed(1)));
      if (p.receivedBytes >= p.totalBytes) bar.stop();
      return;
    }
    const decile = Math.floor((p.receivedBytes / p.totalBytes) * 10);
    if (decile !== lastDecile.get(p.model)) {
      lastDecile.set(p.model, decile);
      stream.write(`downloading ${p.model}: ${decile * 10}% of ${(p.totalBytes / MB).toFixed(1)} MB\n`);
    }
  };
}
