/*
 * The table of `sluice` commands. One row per command; its usage text is what --help prints.
 * Commands that need the engine's layers (train, eval, inspect, quantize, bench, replay,
 * batch) are added here by their authors as they become real: a row is only added for a
 * command that works.
 */
#include "cli.h"

const cli_cmd_t cli_commands[] = {
    {"version", "print the version of sluice and of the libraries it was built with",
     "usage: sluice version [--json]\n"
     "\n"
     "Prints the version of sluice and of the libraries it links.\n"
     "\n"
     "  --json   one JSON object on stdout\n"
     "  -h, --help\n",
     cli_cmd_version},
    {"data describe", "read a task's data files and summarise rows, features, labels and split",
     "usage: sluice data describe --task TASK --data FILE [FILE...] [--json]\n"
     "\n"
     "Reads the data files of one task exactly as training and evaluation do, and prints the\n"
     "rows used, the rows dropped and why, the features, the label balance, the groups and the\n"
     "train / validation / test split (bench/quality/SPLITS.md). A malformed file is reported\n"
     "with its file, line and column.\n"
     "\n"
     "  --task TASK   fraud | fault-ai4i | fault-cmapss | records-mtsamples | records-abstracts\n"
     "  --data FILE   a data file; repeat it, or list several files after it\n"
     "  --json        one JSON object on stdout instead of the table\n"
     "  -h, --help\n"
     "\n"
     "The files are those of ../shared/data: fraud/creditcard_train.csv,\n"
     "fault/ai4i2020_train.csv, fault/cmapss/train_FD001.txt, clinical/mtsamples_train.csv,\n"
     "clinical/medical_abstracts/abstracts_train.csv.\n",
     cli_cmd_data_describe},
    {"inspect", "show a model file: config, inputs, MoE layout, tensors, provenance, metrics",
     "usage: sluice inspect MODEL [--json]\n"
     "\n"
     "Loads MODEL with libmoe (a file the engine refuses is reported with the loader's message\n"
     "and exit status 1) and prints what it is: version, weight format (f32 | q8_0 | q4_0),\n"
     "parameter count, task, labels and threshold, encoder and its inputs, the MoE blocks\n"
     "(experts, top-k, shared experts, d_ff, routing), provenance, the model card metrics\n"
     "stored in provenance.metrics, and every tensor with its dtype, shape and bytes.\n"
     "\n"
     "  --json   one JSON object on stdout (the config without the tokenizer's vocabulary)\n"
     "  -h, --help\n",
     cli_cmd_inspect},
    {"eval", "score a task's data files with a model and print the task's metrics",
     "usage: sluice eval --task TASK --model MODEL --data FILE [FILE...] [--split PART]\n"
     "                   [--rul RUL_FILE] [--json] [--predictions OUT.csv]\n"
     "\n"
     "Reads the data files exactly as `sluice data describe` does, maps their columns to the\n"
     "model's inputs by name (a feature the data lacks is an error naming it), scores them in\n"
     "batches and prints the task's metrics:\n"
     "  binary      pr_auc, roc_auc, recall_at_1pct_fpr, precision / recall / f1 at the model's\n"
     "              threshold, best_f1_threshold and best_f1\n"
     "  multiclass  accuracy, macro_f1\n"
     "  regression  rmse, mae, phm_score\n"
     "fault-cmapss is scored once per engine, at its last observed cycle, from the window of\n"
     "the model's length that ends there (a short engine's first cycle is repeated in front).\n"
     "\n"
     "  --task TASK         fraud | fault-ai4i | fault-cmapss | records-mtsamples |\n"
     "                      records-abstracts\n"
     "  --model MODEL       a model file (see `sluice inspect`)\n"
     "  --data FILE         a data file; repeat it, or list several files after it\n"
     "  --split PART        all (default) | train | validation | test: the part of the\n"
     "                      split of bench/quality/SPLITS.md to score\n"
     "  --rul FILE          fault-cmapss: the official RUL file of a test file (RUL_FD001.txt);\n"
     "                      every engine is scored at its last row\n"
     "  --json              one JSON object on stdout instead of the table\n"
     "  --predictions OUT   writes OUT as CSV, one line per scored input:\n"
     "                      row,score,prediction (row: 0-based data row in its file, the engine\n"
     "                      unit for fault-cmapss; score: probability of the positive class,\n"
     "                      of the predicted class for multiclass, the value for regression;\n"
     "                      prediction: 0/1 at the model's threshold, the class name, the\n"
     "                      value). With several --data files a first column names the file.\n"
     "  -h, --help\n",
     cli_cmd_eval},
    {"topic create", "create a Kafka topic with a chosen number of partitions",
     "usage: sluice topic create --brokers HOST:PORT --topic TOPIC [--partitions N]\n"
     "                           [--replication N] [--if-missing]\n"
     "\n"
     "Creates TOPIC, so that consumers can be started before the producers (a consumer\n"
     "subscribed to a missing topic only finds it at its next metadata refresh).\n"
     "\n"
     "  --brokers B        Kafka bootstrap servers\n"
     "  --topic TOPIC      the topic's name\n"
     "  --partitions N     partitions (4)\n"
     "  --replication N    replication factor (1)\n"
     "  --if-missing       succeed without change when the topic exists already\n"
     "  -h, --help\n",
     cli_cmd_topic_create},
    {"replay", "stream a data set into Kafka as protobuf events, in event-time order",
     "usage: sluice replay --task TASK --data FILE [FILE...] --brokers HOST:PORT\n"
     "                     (--rate N/s | --max) [--topic TOPIC] [--limit N] [--loop] [--json]\n"
     "\n"
     "Reads the data files (the formats of ../shared/data) and produces one sluice.v1.Envelope\n"
     "per data row, in event-time order, keyed per entity:\n"
     "  fraud              Transaction (Amount, V1..V28); key: a pseudo card id \"card-NNNN\"\n"
     "                     derived from file and row (the data has none); time: Time seconds\n"
     "                     after 2026-01-01T00:00:00Z\n"
     "  fault-ai4i         SensorReading; key: Product ID; time: UDI minutes after that epoch\n"
     "  fault-cmapss       SensorReading; key: <file>-unit-<u>; time: one cycle per minute\n"
     "  fault-skab         SensorReading; key: skab-<directory>-<file>; time: the datetime\n"
     "  records-mtsamples  ClinicalNote, every row as it is; key: <file>-<note_id>; time: one\n"
     "                     row per second after the epoch\n"
     "  records-abstracts  as records-mtsamples; key: <file>-<row> (no id column)\n"
     "Event ids are \"<file>:<row>\" (row: 0-based data row), \"#<pass>\" added from the second\n"
     "pass of --loop on; the id is also sent as the header sluice-event-id. Prints sent,\n"
     "delivered and failed events and the rate at the end; exit status 1 if any delivery\n"
     "failed. A progress bar is drawn on a terminal. Ctrl-C stops sending and flushes.\n"
     "\n"
     "  --task TASK      fraud | fault-ai4i | fault-cmapss | fault-skab | records-mtsamples |\n"
     "                   records-abstracts\n"
     "  --data FILE      a data file; repeat it, or list several files after it\n"
     "  --brokers B      Kafka bootstrap servers\n"
     "  --topic T        default sluice.fraud.events, sluice.fault.events or\n"
     "                   sluice.records.events\n"
     "  --rate N/s       events per second (token bucket; \"2k/s\" works)\n"
     "  --max            as fast as the producer accepts\n"
     "  --limit N        stop after N events (the first N in event-time order)\n"
     "  --loop           start again at the end (until --limit or Ctrl-C)\n"
     "  --json           the summary as one JSON object on stdout\n"
     "  -h, --help\n",
     cli_cmd_replay},
    {"train", "train a task's model on its data files and write the model file",
     "usage: sluice train --task TASK --data FILE [FILE...] --out MODEL [--quant f32|int8|int4]\n"
     "                    [--seed N] [--epochs N] [--batch N] [--lr X] [--patience N]\n"
     "                    [--d-model N] [--moe-blocks N] [--experts N] [--top-k N]\n"
     "                    [--window N] [--max-len N] [--vocab N] [--version V] [--json]\n"
     "                    [--weight-decay X] [--label-smoothing X]\n"
     "\n"
     "Splits the data as bench/quality/SPLITS.md says, fits the train part with libmoe's\n"
     "trainer (early stopping on the validation part, best epoch kept), exports MODEL in the\n"
     "chosen weight format, then scores validation and test with the exported file: the binary\n"
     "threshold is the best-F1 threshold on validation, and the metrics of both parts go into\n"
     "the config's provenance (see `sluice inspect`). Epochs are reported on stderr.\n"
     "The same seed and data give the same file: BLAS runs on one thread.\n"
     "\n"
     "  --task TASK     fraud | fault-ai4i (tabular) | fault-cmapss (sensor) |\n"
     "                  records-mtsamples | records-abstracts (text)\n"
     "  --data FILE     a data file; repeat it, or list several files after it\n"
     "  --out MODEL     the model file to write\n"
     "  --quant Q       f32 (default) | int8 (q8_0) | int4 (q4_0), post-training\n"
     "  --seed N        initialisation and shuffling seed (1)\n"
     "  --epochs N      at most N epochs (20); --patience N: stop after N without progress (5)\n"
     "  --batch N       rows per step (256; text 16); --lr X: peak learning rate (0.001;\n"
     "                  text 0.003)\n"
     "  --d-model N     model width (32); --moe-blocks N (1), --experts N (4), --top-k N (2)\n"
     "  --window N      fault-cmapss: cycles per window (30); RUL capped at 125 for training\n"
     "  --max-len N     text: tokens per note, [CLS] included (128); --vocab N: WordPiece\n"
     "                  vocabulary size (4000)\n"
     "  --weight-decay X  AdamW's decoupled weight decay, in [0, 1) (the trainer's 0.01)\n"
     "  --label-smoothing X  multi-class tasks: label smoothing epsilon, in [0, 1) (0)\n"
     "  --version V     the model version string (TASK-trained)\n"
     "  --json          the summary as one JSON object on stdout\n"
     "  -h, --help\n",
     cli_cmd_train},
    {NULL, NULL, NULL, NULL},
};
