"""Evaluation (考核): 四度 worker scores, patrol coverage (巡查覆盖) and community burden (社区减负), by period."""
