export { createAgentHub, type AgentHub, type AgentHubDeps } from './hub.js';
export { type AgentHubConfig, DEFAULT_AGENT_HUB_CONFIG } from './config.js';
