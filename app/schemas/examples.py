"""Small, realistic examples for the API's documentation: one user, alice, and the blog's MLP.

Swagger UI and ReDoc show these in place of generated placeholders; ids have the server's
shapes and the objects refer to one another, so the examples read as one story.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

MODEL_ID = "mdl_01a22d48bff5f08c9bf810"
SESSION_ID = "ses_01a22d48c07c01c1dd7b89"
CHECKPOINT_ID = "ckpt_01a22d4a273cbc0472b9b9"
DATASET_ID = "ds_01a22d4b0c5e2f7a91d3e4"
JOB_ID = "job_01a22d4b1d0a6c3e58f2b7"
SHA256 = "2f4ef39265937ac6ceca10db6bd104f5c56d6bb984456fb9e24d5cd2ec4bd5be"
CREATED = "2026-11-30T16:27:52.186877Z"
UPDATED = "2026-11-30T16:31:07.402113Z"


def example(*values: Any) -> ConfigDict:
    """A model_config that puts these examples in the model's JSON schema."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


def _spec(*shape: int, dtype: str = "float32") -> dict[str, Any]:
    return {"shape": list(shape), "dtype": dtype}


# A batch of two for a model with 4 features and 3 classes: names, shapes and dtypes are those
# of the model's signatures (GET /v1/models/{model_id}); the blog's MLP takes x [-1, 28, 28].
TRAIN = {"inputs": {"x": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]],
                    "y": [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]}}
INFER = {"inputs": {"x": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}
INFER_OUT = {"outputs": {"output": [[0.91, 0.07, 0.02], [0.03, 0.21, 0.76]]}}
TRAIN_OUT = {"outputs": {"loss": 0.41}, "step": 17}

SIGNATURES = {
    "train": {"inputs": {"x": _spec(-1, 28, 28), "y": _spec(-1, 10)},
              "outputs": {"loss": _spec()}},
    "infer": {"inputs": {"x": _spec(-1, 28, 28)},
              "outputs": {"logits": _spec(-1, 10), "output": _spec(-1, 10)}},
    "save": {"inputs": {"checkpoint_path": _spec(dtype="string")},
             "outputs": {"checkpoint_path": _spec(dtype="string")}},
    "restore": {"inputs": {"checkpoint_path": _spec(dtype="string")},
                "outputs": {"dense_1_bias": _spec(128), "dense_1_kernel": _spec(784, 128),
                            "dense_2_bias": _spec(10), "dense_2_kernel": _spec(128, 10)}},
}
MODEL = {"id": MODEL_ID, "name": "mlp", "sha256": SHA256, "size_bytes": 425604,
         "created_at": CREATED, "signatures": SIGNATURES}
SESSION = {"id": SESSION_ID, "user_id": "alice", "model_id": MODEL_ID, "created_at": CREATED,
           "updated_at": UPDATED, "steps": 17, "last_loss": 0.41,
           "head_checkpoint_id": CHECKPOINT_ID, "live": True}
CHECKPOINT = {"id": CHECKPOINT_ID, "user_id": "alice", "model_id": MODEL_ID,
              "session_id": SESSION_ID, "step": 17, "loss": 0.41, "kind": "manual",
              "label": "first",
              "sha256": "9c1d5e0b7a4f3c2e8d6b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d",
              "size_bytes": 408352, "created_at": UPDATED}
DATASET = {"id": DATASET_ID, "user_id": "alice", "name": "digits", "num_examples": 537,
           "arrays": {"x": _spec(537, 28, 28), "y": _spec(537, 10)},
           "sha256": "5b8e2c1d9f0a7b6c3e4d2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c",
           "size_bytes": 1706752, "created_at": CREATED}
JOB_CREATE = {"dataset_id": DATASET_ID, "epochs": 5, "batch_size": 32, "shuffle": True,
              "seed": 1}
PROGRESS = {"epoch": 3, "step": 43, "total_steps": 85}
JOB = {"id": JOB_ID, "session_id": SESSION_ID, "user_id": "alice", "dataset_id": DATASET_ID,
       "status": "running", "epochs": 5, "batch_size": 32, "shuffle": True, "seed": 1,
       "progress": PROGRESS, "metrics": {"epoch_loss": [1.92, 0.87]},
       "checkpoint_ids": ["ckpt_01a22d4b2e6f0a9d3c7b14", "ckpt_01a22d4b3a1c5e8f2d6b90"],
       "error": None, "created_at": UPDATED, "started_at": UPDATED, "finished_at": None,
       "links": {"self": f"/v1/jobs/{JOB_ID}", "events": f"/v1/jobs/{JOB_ID}/events",
                 "loss_svg": f"/v1/jobs/{JOB_ID}/loss.svg",
                 "session": f"/v1/sessions/{SESSION_ID}"}}
KEY_INFO = {"id": "key_01a22d4c0f3b8e2a6d9c15", "prefix": "3fa91c0e", "created_at": CREATED,
            "last_used_at": UPDATED}
KEY_CREATED = {**KEY_INFO, "last_used_at": None,
               "key": "flk_3fa91c0e_qT7vLr2mWc8ZpK4nYd6sHf1Ga5EjXb9RuN0oIw3kLe2"}
PROBLEM = {"type": "https://fleetlite.dev/problems/invalid-input",
           "title": "Unprocessable Entity", "status": 422,
           "detail": "signature 'train': missing input(s) 'y'; it takes 'x' [-1, 28, 28] "
                     "float32, 'y' [-1, 10] float32",
           "error": "signature 'train': missing input(s) 'y'; it takes 'x' [-1, 28, 28] "
                    "float32, 'y' [-1, 10] float32"}
