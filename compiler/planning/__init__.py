"""Planning: the resource solver, memory model, time estimate, DeepSpeed config, the plan itself."""
