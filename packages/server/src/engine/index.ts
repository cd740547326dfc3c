export { Engine, DEFAULT_ENGINE_OPTIONS, type Clock, type EngineOptions } from './engine.js';
export { engineReports } from './reports.js';
export { OperatorActions } from './actions.js';
