"""Tasks say how a batch becomes loss, predictions and metric updates, one file per problem type.

Tasks know nothing of files or of the training loop; the loop knows no problem type.
"""

from torchlab.tasks.base import Deployment, StepOutput, Task, build_task, higher_is_better

__all__ = ["Deployment", "StepOutput", "Task", "build_task", "higher_is_better"]
