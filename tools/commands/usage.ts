/** Thrown by commands for bad flags or arguments: the CLI prints its message on one line and exits with code 2. */
export class CliUsageError extends Error {}
