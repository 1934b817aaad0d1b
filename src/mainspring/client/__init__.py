"""The Python API for application code: manage jobs by name from your own process.

from mainspring.client import Mainspring
ms = Mainspring.from_settings()          # MAINSPRING_* environment, like every role
ms.upsert_job("weekly-inspection", "inspect.run", cron="0 8 * * 3",
              timezone="Asia/Shanghai", data_window={"lookback_s": 3 * 86400,
              "as_kwargs": True})
"""

from mainspring.client.local import JobInfo, Mainspring

__all__ = ["JobInfo", "Mainspring"]
