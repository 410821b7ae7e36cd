"""Plan: options, scenarios and precedence become one immutable RunPlan; bad input is refused here, before any load."""
