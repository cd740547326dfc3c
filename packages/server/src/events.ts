import { EventEmitter } from 'node:events';

/**
 * The one typed event map of the server. The API stream, the web UI and tests subscribe here; tests await
 * events instead of sleeping. Later capabilities add their events (run:started, agent:lost, …) to this map.
 */
export interface ServerEvents {
  'server:ready': { url: string };
  'server:stopping': Record<string, never>;
  'definitions:applied': { changes: number; actor: string };
  'plan:loaded': { planDate: string; entries: number };
  'run:created': { runId: number; jobName: string; planDate: string; origin: string };
  /** A run created ahead of its due time was taken back: the definitions changed, or its time passed while down. */
  'run:withdrawn': { runId: number; jobName: string; planDate: string };
  'run:dispatched': { runId: number; jobName: string; agent: string };
  'run:started': { runId: number; agent: string };
  'run:output': { runId: number; stream: 'stdout' | 'stderr'; bytes: number };
  'run:retrying': { runId: number; jobName: string; attempt: number; at: number };
  'run:ended': { runId: number; jobName: string; planDate: string; state: string; agent: string | null };
  'run:held': { runId: number; held: boolean };
  'condition:posted': { name: string; planDate: string; actor: string };
  'condition:removed': { name: string; planDate: string; actor: string };
  'agent:connected': { name: string };
  'agent:refused': { name: string; reason: string };
  'agent:disconnected': { name: string; reason: string };
  'agent:stale': { name: string };
  'agent:missing': { name: string };
  'agent:draining': { name: string };
  'message:raised': { id: number; key: string; severity: string; created: boolean };
  'message:resolved': { id: number; key: string };
}

export class EventBus {
  private readonly emitter = new EventEmitter({ captureRejections: false });

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  emit<K extends keyof ServerEvents>(event: K, payload: ServerEvents[K]): void {
    this.emitter.emit(event, payload);
  }

  on<K extends keyof ServerEvents>(event: K, listener: (payload: ServerEvents[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }

  /** Resolves with the next event of this kind that satisfies `match`. */
  once<K extends keyof ServerEvents>(event: K, match: (p: ServerEvents[K]) => boolean = () => true): Promise<ServerEvents[K]> {
    return new Promise((resolve) => {
      const off = this.on(event, (p) => {
        if (match(p)) {
          off();
          resolve(p);
        }
      });
    });
  }
}
