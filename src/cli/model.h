/*
 * model.h — `conveyor model ...` (model.c).
 */
#ifndef CV_CLI_MODEL_H
#define CV_CLI_MODEL_H

/* Runs `conveyor model ARGS...` (argv[0] is the subcommand). Returns the
 * exit status: 0, 1 (bad data, unknown model, store failure), 2 (usage). */
int cv__cli_model_main(int argc, char **argv);

#endif
