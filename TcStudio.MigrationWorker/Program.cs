using TcStudio.MigrationWorker;

// Verbs: migrate, revert, status, seed, reset, script (and, with none, migrate then seed: what the AppHost runs).
return await WorkerCommandLine.Create().RunAsync(args);
