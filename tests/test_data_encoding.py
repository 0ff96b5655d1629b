"""One-hot labels and instance boundaries, batched."""

import torch

from vid2vid.data.encoding import instance_edges, one_hot, semantic_input


def test_one_hot_batched():
    labels = torch.randint(0, 5, (2, 3, 8, 9))  # [B,T,H,W]
    out = one_hot(labels, 5)
    assert out.shape == (2, 3, 5, 8, 9) and out.dtype == torch.float32
    assert torch.equal(out.argmax(2), labels) and torch.equal(out.sum(2), torch.ones(2, 3, 8, 9))


def test_instance_edges_four_neighbours():
    inst = torch.zeros(1, 5, 6, dtype=torch.int64)
    inst[0, 1:3, 2:4] = 26001
    expected = torch.tensor([[0, 0, 1, 1, 0, 0],
                             [0, 1, 1, 1, 1, 0],
                             [0, 1, 1, 1, 1, 0],
                             [0, 0, 1, 1, 0, 0],
                             [0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    out = instance_edges(inst)
    assert out.shape == (1, 1, 5, 6)
    assert torch.equal(out[0, 0], expected)  # diagonal neighbours do not count
    assert instance_edges(torch.full((2, 4, 4), 7)).sum() == 0


def test_semantic_input_channels():
    labels = torch.randint(0, 4, (2, 6, 7))
    inst = labels * 1000
    with_edges = semantic_input(labels, inst, 4, use_instance=True)
    assert with_edges.shape == (2, 5, 6, 7)
    assert torch.equal(with_edges[:, :4], one_hot(labels, 4))
    assert torch.equal(with_edges[:, 4:], instance_edges(inst))
    assert semantic_input(labels, inst, 4, use_instance=False).shape == (2, 4, 6, 7)
    no_inst = semantic_input(labels, None, 4, use_instance=True)  # same channel count, zero boundaries
    assert no_inst.shape == (2, 5, 6, 7) and no_inst[:, 4].sum() == 0
