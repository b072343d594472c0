// The error every family's checkpoint loader throws when a checkpoint does not fit the model it
// is loaded into: another architecture, a naming scheme graft does not read, another head, or a
// buffer graft derives with other values than the checkpoint's.
export class CheckpointFormatError extends Error {
  override name = 'CheckpointFormatError';
}
