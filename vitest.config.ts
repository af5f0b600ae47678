import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    // onnxruntime-node and sharp are native: separate processes, not worker threads.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // Bounds on a hang, not on speed (no test asserts a duration: the contract's 2 s for replicas to
    // recognise a new image and 10 s to take over are benchmark figures, bench/replicas.ts): generous, because the suite runs
    // beside other work and a real service's start or a corpus round takes several times longer
    // on a loaded machine (up to 50 s for one test at load average 14).
    testTimeout: 180_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
