"""Where runner work runs. One small interface (base.Executor), implemented by local threads
(local.LocalExecutor) and, for a cluster, by a pool of Ray actors; the services hand work
over by value (a plan, arrays) and by store key, and get results back the same way."""
