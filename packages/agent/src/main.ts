#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';

// `batchalyzer-agent`: the agent alone, without any server dependency (brief §8 "installable alone", "light").
// Lite mode (no optimizing compiler) before anything else loads: the agent is I/O-bound, and this takes its idle
// RSS from about 68 MB to about 54 MB here (of which about 38 MB is the node binary, shared with other processes).
// Jobs are separate processes and run with normal V8 settings.
setFlagsFromString('--lite-mode');
const { agentMain } = await import('./run.js');
agentMain(process.argv.slice(2), process.env, process.cwd());
