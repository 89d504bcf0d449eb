/** Time as the code sees it: real in production, fake in tests of time-driven algorithms. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * Milliseconds that never jump: performance.now() on the epoch scale of the process start.
 * For intervals (rate limiters, timeouts) that a wall-clock step (NTP) must not stretch or
 * reverse; not for timestamps stored or shown.
 */
export const monotonicClock: Clock = { now: () => performance.timeOrigin + performance.now() };

/** A clock that moves only when told to, for failure detectors and rate limiters. */
export class FakeClock implements Clock {
  constructor(private current = 0) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
  set(ms: number): void {
    this.current = ms;
  }
}
