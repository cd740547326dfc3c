/**
 * Shares the event loop between all agents' report commits (docs/architecture.md, "Sharing the event loop").
 *
 * With SQLite every store call completes synchronously inside a chain of microtasks, so committing reports
 * never returns to the event loop by itself: one agent re-sending its queue after a reconnect held the loop for
 * seconds, and Node accepts only one new connection per loop turn, so other agents' upgrades timed out in the
 * listen backlog. The pacer gives report commits a bounded share of each loop turn: as long as the rest of the
 * loop took since their previous share (engine passes, dispatches, sockets), at least `sliceMs` and at most
 * `maxSliceMs`, so that neither side starves the other when the server is saturated and a loop turn stays
 * short when it is not. Commits take turns in arrival order (an agent with a long queue goes to the back after
 * each report), at most `concurrency` at a time (1 for SQLite, where commits are serialised anyway; the pool
 * size for PostgreSQL, where waiting on the database does return to the loop). Handshakes and engine passes do
 * not go through it.
 */
export class Pacer {
  private readonly queue: (() => void)[] = [];
  private active = 0;
  /** When this loop turn's share started; null between turns. */
  private turnStart: number | null = null;
  private budget = 0;
  /** The next turn's share: as long as the other work of the last turn took. */
  private nextBudget: number;
  /** When the last commit of this turn ended: the loop has worked on other things since. */
  private lastLeave = 0;
  private armed = false;

  constructor(private readonly sliceMs: number, private readonly concurrency: number, private readonly maxSliceMs = 10 * sliceMs) {
    this.nextBudget = sliceMs;
  }

  /** Resolves when the caller may commit one report; call `leave()` after it, whatever happened. */
  enter(): Promise<void> | undefined {
    if (this.queue.length === 0 && this.active < this.concurrency && this.hasBudget()) {
      this.active++;
      return undefined;
    }
    const turn = new Promise<void>((resolve) => this.queue.push(resolve));
    this.pump();
    return turn;
  }

  leave(): void {
    this.active--;
    this.lastLeave = performance.now();
    this.pump();
  }

  private hasBudget(): boolean {
    if (this.turnStart === null) {
      this.turnStart = performance.now();
      this.budget = this.nextBudget;
      this.arm(); // ends this turn once the loop gets to its check phase
      return true;
    }
    return performance.now() - this.turnStart < this.budget;
  }

  private pump(): void {
    while (this.queue.length > 0 && this.active < this.concurrency) {
      if (!this.hasBudget()) {
        this.arm();
        return;
      }
      this.active++;
      this.queue.shift()!();
    }
  }

  /**
   * The turn ends in the loop's check phase, after the loop has accepted, read and written sockets; commits
   * still waiting then start the next one.
   */
  private arm(): void {
    if (this.armed) return;
    this.armed = true;
    setImmediate(() => {
      this.armed = false;
      const now = performance.now();
      const other = this.turnStart === null ? 0 : now - Math.max(this.turnStart, this.lastLeave);
      this.nextBudget = this.queue.length > 0 ? Math.min(this.maxSliceMs, Math.max(this.sliceMs, other)) : this.sliceMs;
      this.turnStart = null;
      this.pump();
    });
  }
}
