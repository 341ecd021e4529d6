-- Guided and key-pair rotations wait for an operator: `awaiting` names the
-- step (`set`, `retired`) rekey waits to be confirmed as done at the
-- target, `instructions` (JSON) what the operator must do. Workers skip a
-- rotation while it awaits. Keep the sqlite and postgres files in step.
ALTER TABLE rotations ADD COLUMN awaiting TEXT;
ALTER TABLE rotations ADD COLUMN instructions TEXT;
