-- An alert raised by the cold-start detector (no trained model) has an anomaly score but no
-- failure probability.
alter table alert alter column probability drop not null;
comment on column alert.probability is
    'Failure probability of the window that opened the alert; null when the cold-start '
    'detector (no trained model) opened it, whose level is anomaly_score.';
