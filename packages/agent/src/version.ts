/** The agent's version, announced in hello (kept in step with the workspace version). */
export const AGENT_VERSION = '0.1.0';
