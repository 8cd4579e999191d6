"""Audit of the history: a case's trace (痕迹), accountability (事事有人办), tamper evidence."""
