"""The relay: the local stand-in for DynamoDB's Kinesis streaming destination (DynamoDB Streams
of every source table -> its Kinesis stream, in the destination's record format)."""
