"""fcn-bench backend plugin `numpy32`: the entry point `fcn_bench_numpy32:create_backend`.

Kept free of heavy imports: fcn-bench imports this module to list or use the plugin.
"""

from fcn_bench_numpy32.backend import Numpy32Backend, create_backend

__all__ = ["Numpy32Backend", "create_backend"]
