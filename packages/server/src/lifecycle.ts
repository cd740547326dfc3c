/** Every long-lived part of the server has this shape and is composed in server.ts. */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}
