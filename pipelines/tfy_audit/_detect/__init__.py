"""Detection rules and alerts: rules as YAML files (rules.py, the pack in pack/), run over a
range on the destination (evaluate.py), kept in the `alerts` table (store.py), delivered to a
webhook or Slack (delivery.py); runner.py does one pass."""
