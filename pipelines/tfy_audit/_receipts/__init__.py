"""Daily receipts: tamper evidence for the warehouse (docs/receipts.md)."""
