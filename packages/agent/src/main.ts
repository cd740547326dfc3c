#!/usr/bin/env node
import { agentMain } from './run.js';

// `batchalyzer-agent`: the agent alone, without any server dependency (brief §8 "installable alone").
agentMain(process.argv.slice(2), process.env, process.cwd());
