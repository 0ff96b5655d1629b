from flow.estimators import get_estimator as get_estimator
from flow.raft import RAFT as RAFT
from flow.raft import raft_large as raft_large
from flow.raft import raft_small as raft_small
from flow.video import estimate_video_flow as estimate_video_flow
from flow.warp import backward_warp as backward_warp
from flow.weights import load_raft as load_raft
