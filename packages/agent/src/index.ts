export { Agent, hostFacts } from './agent.js';
export { type AgentConfig, type AgentFlags, AgentConfigError, compileAgentConfig, agentUrl, parseDurationMs } from './config.js';
export { DiskQueue } from './queue.js';
export { RunJournal } from './journal.js';
export { Masker, RunOutput } from './output.js';
export { globToRegExp } from './glob.js';
export { agentMain, runAgent, parseAgentArgs, AGENT_USAGE } from './run.js';
export { AGENT_VERSION } from './version.js';
