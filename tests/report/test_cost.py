"""GFLOPs as the report counts them: a multiply-add is 2 FLOPs, attention on the CPU included."""

import torch
import torch.nn.functional as F

from mtkd.report.cost import count_flops


class Attention(torch.nn.Module):
    def forward(self, x):
        return F.scaled_dot_product_attention(x, x, x)


def test_cpu_attention_is_counted_by_its_two_matrix_products():
    b, h, n, d = 2, 3, 50, 8
    # QKᵀ (n×d by d×n) and AV (n×n by n×d): 2·n·n·d multiply-adds per head, 2 FLOPs each
    assert count_flops(Attention(), torch.randn(b, h, n, d)) == 2 * (2 * b * h * n * n * d)


def test_convolution_flops_by_hand():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert count_flops(conv, torch.randn(1, 3, 5, 6)) == 2 * (5 * 6) * 4 * (3 * 3 * 3)
