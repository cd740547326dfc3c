/**
 * Shares the event loop between all agents' report commits (docs/architecture.md, "Sharing the event loop").
 *
 * With SQLite every store call completes synchronously inside a chain of microtasks, so committing reports
 * never returns to the event loop by itself: one agent re-sending its queue after a reconnect held the loop for
 * seconds, and Node accepts only one new connection per loop turn, so other agents' upgrades timed out in the
 * listen backlog. The pacer gives report commits at most `sliceMs` of each loop turn, in turns taken in arrival
 * order (an agent with a long queue goes to the back after its turn), and at most `concurrency` commits at
 * a time (1 for SQLite, where commits are serialised anyway; the pool size for PostgreSQL, where waiting on the
 * database does return to the loop). Handshakes and engine passes do not go through it.
 */
export class Pacer {
  private readonly queue: (() => void)[] = [];
  private active = 0;
  /** When this loop turn's budget started; null between turns. */
  private turnStart: number | null = null;
  private armed = false;

  constructor(private readonly sliceMs: number, private readonly concurrency: number) {}

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
    this.pump();
  }

  private hasBudget(): boolean {
    if (this.turnStart === null) {
      this.turnStart = performance.now();
      this.arm(); // ends this turn once the loop gets to its check phase
      return true;
    }
    return performance.now() - this.turnStart < this.sliceMs;
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
      this.turnStart = null;
      this.pump();
    });
  }
}
